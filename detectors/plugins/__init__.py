"""Built-in detector plug-ins, one module each (`detectors.base.registry()` imports every module here)."""
