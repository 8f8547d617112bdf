"""Blender-side building blocks shared by operators, capture.py and retarget: the capture rig, its bulk-written
actions, the matched camera and the scene set-up. Data flows one way: take -> engine solve -> these writers."""
