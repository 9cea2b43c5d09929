"""Physical models after Smith's digital waveguides: string, waveguide, modal."""
