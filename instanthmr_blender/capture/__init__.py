"""Up to the take: the capture's settings, the per-frame step (detect, estimate, track), the offline and live
loops, tracking, provenance, and SAM 3D Body results imported as a take."""
