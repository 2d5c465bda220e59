// Package pins keeps the modules exitnet depends on (and their pinned
// versions, see docs/build.md) in go.mod even while no package imports them.
// Nothing imports this package.
package pins

import (
	_ "gorgonia.org/tensor"
)
