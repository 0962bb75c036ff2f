"""The dataset layouts, the procedural sets, decoding and sampling of identity images."""
