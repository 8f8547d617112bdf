"""Stand-ins the tests and the benchmarks share (not shipped with the extension): models built with the exact
model contracts, a loopback MJPEG server, the CMU and real-network takes, a BVH reader."""
