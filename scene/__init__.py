"""Building the Blender scene from a solve, shared by the operators, the command line (cli/) and retarget: the
capture rig and the live rig, their bulk-written actions, the matched camera, quality markers and exports. Data
flows one way: take -> engine solve -> these writers."""
