"""Software-defined assets, sensors and schedules, grouped by what they produce."""
