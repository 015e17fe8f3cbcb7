"""Building blocks shared by the models: attention, convolutions, conformer."""
