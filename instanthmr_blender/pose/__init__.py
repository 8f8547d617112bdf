"""A frame and person boxes in, poses out: the RF-DETR person detector, InstantHMR (its graph read from the file
itself) and SAM 3D Body."""
