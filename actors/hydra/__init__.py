"""Hydra: the detector's model, model store, training and synthetic scenes.

Library code shared by the ``camera`` and ``detector`` actors and the
``sensorium models`` command (not an actor kind itself): ``scenes`` (numpy +
OpenCV), ``store`` and ``metrics`` (no torch), ``model`` and ``train`` (torch).
"""
