"""`python -m bench`: every benchmark, one after another."""

from bench import backfill, geocode, landscape, sensor, upsert

if __name__ == "__main__":
    backfill.main()
    sensor.main()
    geocode.main()
    landscape.main()
    upsert.main()
