"""`python -m bench`: every benchmark, one after another."""

from bench import backfill, geocode, sensor

if __name__ == "__main__":
    backfill.main()
    sensor.main()
    geocode.main()
