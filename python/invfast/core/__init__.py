"""What every method of invfast shares: checkpoints, data, models, transformations, groups,
and the runtime (device, torch.distributed, output folders, progress, figure style)."""
