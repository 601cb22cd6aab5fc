"""The admin side of the web process: the JSON API's views (one module per area, wired by
`api.setup`) over the actions (`actions/`), which `polaris admin ...` calls too.

Kept empty so the shell can import the actions without building every view.
"""
