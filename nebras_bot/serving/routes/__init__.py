"""HTTP routes of ``nebras serve``, one module per resource."""
