"""The cycle loop and what it is made of: seeding, training, inference, evaluation, checkpoints."""
