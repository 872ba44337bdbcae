"""Plans shipped with the package (`seed_500.yaml`: the researcher's 500-epoch plan)."""
