from rseq_gen.cli import main

raise SystemExit(main())
