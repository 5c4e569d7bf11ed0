package edge

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/dnsedge/dnsedge/internal/field"
	"github.com/dnsedge/dnsedge/internal/yamlcheck"
	"github.com/dnsedge/dnsedge/policy"
)

// loadPolicyFile reads and compiles the policy document policy_file names,
// relative to the directory of the configuration file name. A file that
// cannot be read is a field error at policy_file (read, placed in the
// configuration); the document's own problems are placed in the policy
// file (doc). Both are nil when there is no file or it is fine.
func (c *Config) loadPolicyFile(name string) (read, doc error) {
	if c.PolicyFile == "" {
		return nil, nil
	}
	if !filepath.IsAbs(c.PolicyFile) {
		c.PolicyFile = filepath.Join(filepath.Dir(name), c.PolicyFile)
	}
	data, err := os.ReadFile(c.PolicyFile)
	if err != nil {
		return field.Wrap("policy_file", err), nil
	}
	p, err := policy.Load(c.PolicyFile, data)
	if err != nil {
		return nil, err
	}
	c.policy = p
	return nil, nil
}

// validatePolicy compiles the policy section and checks that every group
// its rules name exists. A policy file was compiled by loadPolicyFile.
func (c *Config) validatePolicy() []error {
	var errs []error
	if c.Policy != nil {
		if c.PolicyFile != "" {
			errs = append(errs, field.Errorf("policy_file", "set policy or policy_file, not both"))
		}
		p, err := policy.Compile(*c.Policy)
		if err != nil {
			return append(errs, field.Prefix("policy", err))
		}
		if c.PolicyFile == "" {
			c.policy = p
		}
	}
	if c.policy == nil {
		return nil
	}
	at := "policy"
	if c.PolicyFile != "" {
		at = "policy_file"
	}
	groups := make(map[string]bool, len(c.Groups))
	for _, g := range c.Groups {
		groups[g.Name] = true
	}
	for _, g := range c.policy.Groups() {
		if !groups[g] {
			errs = append(errs, field.Errorf(at, "a rule routes to group %q, which groups does not declare", g))
		}
	}
	return errs
}

// shadowedRules warns about rules that can never match. Those of a policy
// file are placed in the file; the returned problems are already placed.
func (c *Config) shadowedRules() (inFile []Problem, inline error) {
	if c.policy == nil {
		return nil, nil
	}
	err := c.policy.Shadowed()
	if err == nil {
		return nil, nil
	}
	if c.PolicyFile == "" {
		return nil, field.Prefix("policy", err)
	}
	for _, e := range field.Flatten(err) {
		inFile = append(inFile, Problem{File: c.PolicyFile, Msg: e.Error(), Warning: true})
	}
	return inFile, nil
}

// joinProblems puts the problems of several *yamlcheck.Error (or plain
// errors) into one, in order.
func joinProblems(errs ...error) error {
	var all []Problem
	for _, err := range errs {
		if err == nil {
			continue
		}
		var ye *yamlcheck.Error
		if errors.As(err, &ye) {
			all = append(all, ye.Problems...)
			continue
		}
		all = append(all, Problem{Msg: err.Error()})
	}
	if len(all) == 0 {
		return nil
	}
	return &yamlcheck.Error{Problems: all}
}
