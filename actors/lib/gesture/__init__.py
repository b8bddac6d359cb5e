"""Gestures: the store, DTW matching, training, the motion segmenter, recording sessions."""
