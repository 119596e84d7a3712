"""tunedeck: launch and watch Hugging Face fine-tunes."""
