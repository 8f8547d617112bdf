"""The InstantHMR engine, Blender-free, in packages that follow the data:

    video/    where pixels come from: files, image sequences, live cameras and streams, the lens
    models/   which weights and how they load: registry, model files, ONNX Runtime, fp16 and INT8 variants
    pose/     a frame and person boxes in, poses out: RF-DETR, InstantHMR, SAM 3D Body
    workers/  processes under another Python (the MHR body module, SAM 3D Body) and their protocol
    capture/  up to the take: settings, the per-frame step, the offline and live loops, tracking, provenance
    take.py   the take: the contract between capture and solve, and its .npz format
    solve/    the take's keypoints -> a capture rig and its motion (clean, smooth, contacts, ground, skeleton)
    mesh/     the optional MHR body mesh per person

Nothing in this package may import bpy, bmesh or mathutils (a test enforces it), so every piece of it runs and
is tested under plain Python with numpy, onnxruntime and OpenCV.
"""
