"""The one settings path shared by the panel and the command line: the add-on preferences read, model files
resolved, and the engine's capture and solve settings built once (`capture.py`). Imports bpy; never `ui/`."""
