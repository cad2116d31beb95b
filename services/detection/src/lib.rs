//! Kordon detection: motion and object detection on the detect stream
