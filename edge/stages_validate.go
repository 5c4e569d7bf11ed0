package edge

import (
	"github.com/dnsedge/dnsedge/edge/pipeline"
	"github.com/dnsedge/dnsedge/edge/validate"
)

// validateKey identifies the DNSSEC validation state in the pool: the
// dnssec section and the state of the trust anchor files it names, so
// that a reload keeps the validator with the DNSKEY and DS sets it holds
// and keeps writing the same audit log, unless the section or an anchor
// file changed.
type validateKey struct{ spec, files string }

// buildValidate takes the validation state from the pool and binds this
// generation's chain to it: the validator fetches DNSKEY and DS sets
// through the stage's next handler (forward) of the latest generation
// still alive.
func buildValidate(b *chainBuild) (pipeline.Middleware, error) {
	cfg := b.g.cfg.DNSSEC
	if !cfg.On() {
		return nil, nil
	}
	var files string
	for _, f := range cfg.AnchorFiles() {
		files += f + "=" + fileStamp(f) + ";"
	}
	v, _, err := take(b.g.parts, validateKey{spec: jsonKey(cfg), files: files}, func() (*validate.Validation, func() error, error) {
		v, err := validate.New(cfg, nil)
		if err != nil {
			return nil, nil, err
		}
		return v, v.Close, nil
	})
	if err != nil {
		return nil, err
	}
	if err := v.Register(b.g.metrics); err != nil {
		return nil, err
	}
	mw, unbind := v.Bind()
	b.onClose(unbind)
	return mw, nil
}
