//go:build !unix

package bolt

import "os"

// mapFile reads the file at path for checkFile.
func mapFile(path string) (data []byte, release func(), err error) {
	data, err = os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	return data, func() {}, nil
}
