"""humanbench_mini: a procedurally drawn human-centric dataset for every HumanBench task.

``draw`` renders figures (skeleton, appearance, part labels); ``generate`` writes each dataset's
source tree in the real on-disk format; ``build_all`` builds them with data/build.py.
See data/humanbench_mini/README.md.
"""
