"""Configuration pipeline: loader -> schema + semantic checks -> model."""
