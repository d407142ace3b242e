"""vla: vision-language-action policies for robots."""
