"""Data preparation tools (no TensorFlow): de-duplication against evaluation sets, video frame
sampling, LUPerson-NL identity filtering. Each is a module with functions and a command line."""
