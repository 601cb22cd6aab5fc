"""Polaris Express: a self-hosted platform for running an EV-charging business."""

__version__ = "0.1.0"
