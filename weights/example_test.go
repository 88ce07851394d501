package weights_test

import (
	"errors"
	"fmt"

	"github.com/mam-go/mam-go/internal/testutil"
	"github.com/mam-go/mam-go/weights"
)

// Open a SAM checkpoint (here the tiny test model, in the same format as
// sam_vit_b_01ec64.pth), navigate to a module and read its weights by
// state-dict name, with their shapes checked.
func Example() {
	s, err := weights.Open(testutil.Golden("tiny", "weights", "sam.pth"))
	if err != nil {
		fmt.Println(err)
		return
	}
	enc := s.Sub("image_encoder")
	w, err := enc.Sub("patch_embed").Sub("proj").Floats("weight", 32, 3, 16, 16)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("patch_embed.proj.weight:", len(w), "values")

	// Block 1 attends globally over the 16x16 grid: its table has 31 rows.
	attn := enc.Sub("blocks").Index(1).Sub("attn")
	_, err = attn.Floats("rel_pos_h", 11, 16)
	fmt.Println("11 rows:", errors.Is(err, weights.ErrShape))
	shape, _ := attn.Shape("rel_pos_h")
	fmt.Println("rel_pos_h", shape)

	fmt.Println(len(s.Unused()), "of", s.Len(), "tensors not read yet")
	// Output:
	// patch_embed.proj.weight: 24576 values
	// 11 rows: true
	// rel_pos_h [31 16]
	// 172 of 174 tensors not read yet
}
