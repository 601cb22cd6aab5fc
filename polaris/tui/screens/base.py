"""What every screen of the console shares.

Textual's `Worker.StateChanged` does not bubble, so each screen hands its workers' state
changes to the App, whose one handler turns failures into notices (or the sign-in /
unreachable screens).
"""

from __future__ import annotations

from textual.worker import Worker


class ForwardWorkerErrors:
    """Mixin for screens whose workers call the API."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.app.on_worker_state_changed(event)  # type: ignore[attr-defined]
