"""Processes under another Python (the MHR body module, SAM 3D Body): the array protocol, the add-on's client,
the worker scripts and the bootstrap they run first."""
