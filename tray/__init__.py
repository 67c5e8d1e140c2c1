"""The tray app: a system tray icon over the pipeline controller (`vcam tray`)."""
