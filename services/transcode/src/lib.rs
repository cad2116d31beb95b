//! Kordon transcode: renditions, thumbnails and export transcodes
