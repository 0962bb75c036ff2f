"""The recognition trainers (re-id, faces), their losses and dynamic sample selection."""
