"""``python -m vidur_search``: the configuration search (see vidur_search/app.py)."""

from vidur_search.app import main

if __name__ == "__main__":
    main()
