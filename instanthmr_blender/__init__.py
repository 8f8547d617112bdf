"""The InstantHMR engine: video frames, detection, InstantHMR, tracking, takes and the solve (solve/: its stages).

Blender-free by contract: nothing in this package may import bpy, bmesh or mathutils (a test enforces it),
so every piece of it runs and is tested under plain Python with numpy, onnxruntime and OpenCV.
"""
