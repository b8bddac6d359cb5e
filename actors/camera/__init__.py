"""The camera kind: frames from OpenCV or a synthetic scene, with their quality, on ``camera.frame``."""

from actors.camera.settings import CameraSettings
from actors.spec import Extra, KindSpec
from bus.bodies.vision import CameraFrame

SPEC = KindSpec(
    name="camera",
    description="camera frames (device, file, stream or synthetic scene) with blur/brightness quality",
    actor="actors.camera.actor:CameraActor",
    settings=CameraSettings,
    publishes=(CameraFrame,),
    extras=(Extra("vision", ("cv2",)),),
)
