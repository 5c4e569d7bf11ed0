package edge

import "testing"

// TestValidateInsideCache pins the validate row right inside the cache:
// the cache must store validated answers with their verdict, and a hit
// must not be validated again.
func TestValidateInsideCache(t *testing.T) {
	t.Parallel()
	at := make(map[string]int)
	for i, s := range stages {
		at[s.name] = i
	}
	c, okc := at["cache"]
	v, okv := at["validate"]
	if !okc || !okv || v != c+1 {
		t.Errorf("cache at %d (%v), validate at %d (%v): validate must come right after the cache", c, okc, v, okv)
	}
}
