"""The loaders of real dataset layouts, decoding and sampling of identity images; the sets rgsyn renders
itself are in rgsyn.data.procedural."""
