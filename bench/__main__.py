"""`python -m bench`: every benchmark, one after another."""

from bench import backfill

if __name__ == "__main__":
    backfill.main()
