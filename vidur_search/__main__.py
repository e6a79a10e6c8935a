"""``python -m vidur_search``: the main job.

Until the configuration search lands, it runs one default simulation (the same as
``python -m vidur_search.simulate``) with the same overrides.
"""

from vidur_search.simulate import main

if __name__ == "__main__":
    main()
