"""What every command needs around the maths: the device, torch.distributed, output files
and folders that appear whole or not at all, progress, and one figure style."""
