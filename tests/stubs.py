"""Test doubles shared by several test modules."""


class IdentityBlur:
    """Stand-in for wand.image.Image whose motion blur does nothing."""

    def __init__(self, blob):
        self.blob = blob

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def motion_blur(self, radius, sigma, angle):
        assert (radius, sigma) == (14, 12) and -135 <= angle <= -45

    def make_blob(self, fmt):
        return self.blob
