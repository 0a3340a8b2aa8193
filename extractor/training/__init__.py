"""Training small GPT-2 models on a task with the D-RASP paper's recipe."""
