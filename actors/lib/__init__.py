"""The shared library: code that more than one part uses and no kind owns.

Kinds, the CLI and the console use it; it imports only ``bus`` and
``config`` (and itself), never a kind or the actor runtime.

* ``audio/``: decoding and resampling, the per-stream table, the speech
  segmenter (webrtcvad), WER, the shipped speech fixtures;
* ``imu/``: Sensor Logger reading parsers, synthetic IMU gesture scripts;
* ``gesture/``: the gesture store, matching, training, segmenter and
  recording sessions;
* ``modelstore.py``: the model registry and store (versions, promote, rollback; the user store over the
  shipped one);
* ``model_migration.py``: moving models an earlier release wrote into the checkout to the user store;
* ``scenes.py``: synthetic labelled scenes (the camera's synthetic source, training data);
* ``batch.py``: resumable JSON-lines results of the batch commands.
"""
