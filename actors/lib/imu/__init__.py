"""IMU building blocks: Sensor Logger parsers and synthetic gesture scripts."""
