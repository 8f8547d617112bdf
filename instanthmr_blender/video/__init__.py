"""Where pixels come from: video files, image sequences and single images, live cameras and streams, the lens."""
