from mcuformer.cli import main

raise SystemExit(main())
