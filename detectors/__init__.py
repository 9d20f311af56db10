"""Smoke/fire and blocked-exit detectors.

ultralytics must never install packages at run time (the command room has no internet, and a pip run
inside the core is an outage): its auto-install is switched off before it is first imported, and
`detectors.weights` puts back PIL's own ``Image.open`` that ultralytics wraps (the wrapper pip-installs
pi-heif when an image is unreadable — e.g. a bad photo upload in the console).
"""

import os

os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_OFFLINE", "true")
