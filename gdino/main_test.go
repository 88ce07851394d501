package gdino

import (
	"testing"

	"github.com/mam-go/mam-go/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }
