"""The CNN baseline: a small ResNet and a learned instruction embedding in place of Kosmos-2."""
