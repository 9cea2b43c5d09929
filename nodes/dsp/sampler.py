"""Sample playback: the ``file`` player."""
