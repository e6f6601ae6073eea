"""One module per trainable model family; each provides HELP, add_arguments(parser, name), run(args)
and, for generators, sample(checkpoint, args)."""
